"""The grant side: everything that decides and signs what a caller may upload or read.

``request`` (request bodies), ``policy`` (upload profiles), ``naming`` (upload ids, blob names),
``token`` (the signed grant header), ``delegation`` (the user delegation key cache and the one-blob SAS),
``issuer`` (grants and renewals), ``state`` (what storage holds at a granted name), ``cancel`` (giving an
unused grant back, with its window rule), ``downloads`` (read URLs for accepted uploads) and ``granted``
(what a blob's name and grant header grant, read in one call by the validator).
"""
