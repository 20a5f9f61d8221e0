"""biosim.io"""
