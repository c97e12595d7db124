"""The reconciler: turns a plan into created, awaited and canceled jobs.

Split by concern so each piece stays small and testable:
`planning` (workspace -> validated resources -> desired jobs -> refreshed plan), `requests`
(desired job -> provider `CreateRequest`), `matching` (exactly-once: find a job a lost create may
have made), `outputs` (what state and `output_file` record), `statewriter` (coalesced atomic saves),
`waiter` (bulk polling until terminal) and `executor` (the apply engine), which routes each planned
change to a small room: `upstream`, `jobrun`, `creation`, `waiting`, `cancel`, `destmodels`,
`outputfiles`, sharing one `context`, controlled by `stopcontrol`, recording into `report`.
"""
from __future__ import annotations
