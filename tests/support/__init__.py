"""What the tests build on, importable as ``support.X`` (tests/ is on pytest's ``pythonpath``):

fakeregistry, hostileregistry   in-process registries (aiohttp.web on loopback), with faults
fakeupload                      the fake registry with uploads (POST, PATCH, PUT, mounts) and
                                  their faults
fakehosts                       names that resolve to loopback, for tests of host names
imagefactory, cosignfactory     images, indexes, layouts and signatures made to order
commandline, credentialhelper   the bulkpull command as users run it; a docker credential
                                  helper written for a test
services, secure_services,      real components (registries with TLS, token auth and
  loaders                         proxies; dockerd; containerd), skipped with a reason
                                  where missing and failing under CI=true
testimages, archives, matrix    the image set pushed to real registries, reading archives
                                  back, and the interop matrix of tests/real
"""
