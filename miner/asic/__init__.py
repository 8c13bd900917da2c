"""The ASIC side: the cgminer-compatible API, what farms use to read and drive their rigs.

- ``wire``: api.c's reply format and request parsing;
- ``commands``: what each command answers, read from the running miner;
- ``access``: ``--api-allow``;
- ``server``: the TCP server ``miner mine --api-listen`` runs;
- ``client``: one request to one miner, tolerant of firmware quirks;
- ``fleet``: hosts files and subnets, and sweeps over many miners at once;
- ``models``: ASIC models' nameplate figures;
- ``simulator``: a farm of simulated rigs on loopback, for trying fleet tools without a farm;
- ``metrics``: Prometheus series for this miner and for a fleet;
- ``curtail``: which rigs run at a given power price, and switching them.

Imports point one way: this package uses the core (stats, block, work) and never the reverse.
"""
