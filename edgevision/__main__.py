from edgevision.cli import console

console()
