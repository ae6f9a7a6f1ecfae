"""Engine tests run without Home Assistant: no hass fixture is used here."""
