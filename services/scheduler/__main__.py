from services.scheduler.app import create_app
from shared.runtime import serve

serve(create_app())
