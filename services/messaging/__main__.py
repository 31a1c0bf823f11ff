import asyncio

from services.messaging.app import app

asyncio.run(app.run())
