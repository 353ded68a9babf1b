"""Every object that declares a Twisted or zope interface in the POP3, LMTP,
auth, TLS and plugin code really provides it (methods and attributes, with
compatible signatures): ``zope.interface.verify.verifyObject``."""

from __future__ import annotations

import io

import pytest
from twisted.application.service import IService, IServiceMaker
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.portal import IRealm, Portal
from twisted.internet.interfaces import (
    IOpenSSLServerConnectionCreator,
    IProtocol,
    IProtocolFactory,
    IPushProducer,
)
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.plugin import IPlugin, getPlugins
from zope.interface.verify import verifyClass, verifyObject

from mailsrv import tls
from mailsrv.auth import MailRealm, PasswdFileChecker, make_portal
from mailsrv.config import Config
from mailsrv.lmtp import LMTPFactory, LMTPServer
from mailsrv.pop3 import POP3Factory, POP3Server
from mailsrv.pop3.streaming import MessageSender
from mailsrv.store import Store


@pytest.fixture
def config(tmp_path) -> Config:
    return Config(data_dir=str(tmp_path / "data"), hostname="mx.test")


def test_passwd_file_checker(config) -> None:
    checker = PasswdFileChecker(config.passwd_path, config, reactor=Clock())
    assert verifyObject(ICredentialsChecker, checker)


def test_mail_realm(config) -> None:
    assert verifyObject(IRealm, MailRealm(Store(config.data_dir)))


def test_portal_uses_the_verified_checker_and_realm(config) -> None:
    portal = make_portal(Store(config.data_dir), config, reactor=Clock())
    assert isinstance(portal, Portal)
    assert isinstance(portal.realm, MailRealm)
    (checker,) = {id(c): c for c in portal.checkers.values()}.values()
    assert verifyObject(ICredentialsChecker, checker)


def test_reloadable_tls_context(tmp_path) -> None:
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    tls.make_self_signed(cert, key, "mx.test")
    assert verifyObject(IOpenSSLServerConnectionCreator, tls.ReloadableContext(cert, key))


def test_pop3_factory_and_protocol(config) -> None:
    factory = POP3Factory(Portal(MailRealm(Store(config.data_dir))), config, reactor=Clock())
    assert verifyObject(IProtocolFactory, factory)
    proto = factory.buildProtocol(None)
    assert isinstance(proto, POP3Server)
    assert verifyObject(IProtocol, proto)


def test_pop3_message_sender() -> None:
    sender = MessageSender(StringTransport(), io.BytesIO(b"Subject: x\r\n\r\nbody\r\n"), b"+OK\r\n")
    assert verifyObject(IPushProducer, sender)
    assert verifyClass(IPushProducer, MessageSender)


def test_lmtp_factory_and_protocol(config) -> None:
    factory = LMTPFactory(Store(config.data_dir), config, lambda name: False, reactor=Clock())
    assert verifyObject(IProtocolFactory, factory)
    proto = factory.buildProtocol(None)
    assert isinstance(proto, LMTPServer)
    assert verifyObject(IProtocol, proto)


def test_twistd_plugin_service_maker(config) -> None:
    import twisted.plugins

    makers = [p for p in getPlugins(IServiceMaker, twisted.plugins) if p.tapname == "mailsrv"]
    assert len(makers) == 1
    (maker,) = makers
    assert verifyObject(IPlugin, maker)
    assert verifyObject(IServiceMaker, maker)
    options = maker.options()
    options.parseOptions(["--data", config.data_dir, "--no-demo-user", "--pop3", "tcp:0:interface=127.0.0.1"])
    service = maker.makeService(options)
    assert verifyObject(IService, service)
    service.store.close()  # its inotify watch is a reader in the reactor: leave none to the next test
