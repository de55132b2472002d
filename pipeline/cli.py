def main() -> None:
    raise SystemExit("cli under construction")
