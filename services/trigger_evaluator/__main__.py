from services.trigger_evaluator.app import app
from shared.runtime import serve

serve(app)
