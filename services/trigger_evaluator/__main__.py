import asyncio

from services.trigger_evaluator.app import app

asyncio.run(app.run())
