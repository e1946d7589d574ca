"""Analysis of stored rows, no JAX: statistics (stats), forecasts beyond the grid
(forecast/), the planner (plan), where a sweep's wall time went (breakdown), and which
machines rows came from (machines).
"""
