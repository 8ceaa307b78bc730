"""The datatypes, one package or module each; ``registry`` lists the built-in ones."""
