"""biosim.physics.stimulation"""
