"""eqv2.so3"""
