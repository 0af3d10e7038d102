"""The FunASR WebSocket protocol server.

Nothing here touches tensors: ``protocol`` parses and builds messages,
``offline_session`` holds one connection's state for the offline profile,
``decoder_pool`` runs model work off the event loop, ``app`` serves
connections, ``cli`` turns the reference's flags into a running server.
"""
