"""biosim.physics.thermal"""
