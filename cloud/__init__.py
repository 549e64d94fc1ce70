"""The cloud consumer: validate, account, detect, alert, and write time series."""
