"""signup: branded sign-up with an exactly-one `user.new` event per created account."""

__version__ = "0.1.0"
