"""The controller service: the asyncio cycle that ties PLCs, vision, routing and the store together."""
