"""The live platform (part 6): the community's database, its participants and, to come, the
server that homes' agents and smart meters talk to. A face of the engine: it calls the same
lifecycle, market, settlement and ledger code as the simulator."""
