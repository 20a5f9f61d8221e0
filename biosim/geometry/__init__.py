"""biosim.geometry"""
