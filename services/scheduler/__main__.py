from services.scheduler.app import app
from shared.runtime import serve

serve(app)
