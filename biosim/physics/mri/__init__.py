"""biosim.physics.mri"""
