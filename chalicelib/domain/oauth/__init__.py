"""OAuth 2.0 / FAPI 2.0 protocol logic, framework-free, one module per concern (client
authentication RFC 7523, DPoP RFC 9449, PKCE RFC 7636). Nothing here touches the network or
storage: replay checks are the caller's, through the ``ReplayStore`` port."""
