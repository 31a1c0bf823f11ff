import asyncio

from services.scheduler.app import app

asyncio.run(app.run())
