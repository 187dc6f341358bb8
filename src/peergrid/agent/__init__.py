"""Home agents: a home's EMS and smart meter against a live peergrid server (docs/live.md).

An agent runs one or more households of a scenario (`homes`) with the scenario's own EMS policy
and forecaster, bids at every gate closure of the market's calendar (`submission`: signed
orders), delivers every slot on the wall clock and reports the meter's registers at each slot
boundary (`meter`), over the server's HTTP API (`client`); `run` wires them to the clock. It
speaks HTTP only and never imports the server.
"""
