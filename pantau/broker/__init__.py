"""Broker identity generated from the device registry: accounts, Mosquitto's password
file and ACL, checked before a broker is started with them."""
