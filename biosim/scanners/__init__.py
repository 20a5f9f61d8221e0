"""biosim.scanners"""
