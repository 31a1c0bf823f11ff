from services.enrollment.app import app
from shared.runtime import serve

serve(app)
