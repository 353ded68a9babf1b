from tests.imap.standins import install

install()
