from chatkeep.cli.main import app

app(prog_name="chatkeep")
