"""eqv2.nn"""
