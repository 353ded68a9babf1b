from twisted.python import usage
from twisted.application import service
class Options(usage.Options):
    pass
def makeService(options):
    return service.MultiService()
