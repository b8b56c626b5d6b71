"""The HTML account portal: Flask-WTF forms over the same service functions as the JSON API."""
from flask import Blueprint

bp = Blueprint("portal", __name__)
