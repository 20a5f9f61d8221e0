"""biosim.physics.neural"""
