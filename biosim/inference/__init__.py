"""biosim.inference"""
