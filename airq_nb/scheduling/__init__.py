"""The asyncio scheduler: delivers queued messages and runs durable recurring schedules."""
