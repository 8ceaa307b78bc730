from dvidql.cli import app

app()
