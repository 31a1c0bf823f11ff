import asyncio

from services.enrollment.app import app

asyncio.run(app.run())
