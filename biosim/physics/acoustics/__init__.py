"""biosim.physics.acoustics"""
