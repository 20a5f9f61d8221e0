"""biosim.physics"""
