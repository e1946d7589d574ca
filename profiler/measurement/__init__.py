"""The measuring side, run inside a measuring process: trace, lower, compile and run one
`Program` (measure), parse its HLO (hlo), correct loop costs (cost), describe the
environment (env), and the compile's anatomy (anatomy/). Knows nothing of grids or files.
"""
