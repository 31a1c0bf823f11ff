from services.trigger_evaluator.app import create_app
from shared.runtime import serve

serve(create_app())
