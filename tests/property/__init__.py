"""Property tests (hypothesis): the portal telegram and payload parsers, the Individual Number
detector and the amount and date conversions, each against generated input and, where one exists,
the sandbox's independent reading of the protocol."""
