"""biosim.physics.electromag"""
