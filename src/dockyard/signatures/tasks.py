"""Job handlers of the signatures package: none yet. Verification runs when asked (API, CLI) and its
verdicts are cached (services.Signatures); a pull policy reads them with `Signatures.cached`."""
