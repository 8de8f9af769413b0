"""eqv2.graph"""
