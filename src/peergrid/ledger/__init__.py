"""The run's tamper-evident ledger (docs/ledger.md).

An append-only log of the market lifecycle — participants' signed orders, clearing results and
commitments, meter readings, deviations and the settlement's postings — committed into an
RFC 6962 Merkle tree whose signed tree heads let any participant check that an entry is in the
log (inclusion proof) and that the log only ever grew (consistency proof), without a blockchain.
"""
