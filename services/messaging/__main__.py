from services.messaging.app import app
from shared.runtime import serve

serve(app)
