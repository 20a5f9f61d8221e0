"""biosim.instruments"""
