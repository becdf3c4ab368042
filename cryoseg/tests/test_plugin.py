"""The plugin as Scipion sees it: discovery through the entry point, Plugin class, citations."""
import os

from pwem import Domain

import cryoseg
import cryoseg.bibtex


def test_plugin_is_discovered_by_the_pwem_domain():
    plugins = Domain.getPlugins()
    assert 'cryoseg' in plugins
    plugin = Domain.getPlugin('cryoseg')
    assert issubclass(plugin.Plugin, cryoseg.Plugin.__mro__[1])


def test_plugin_needs_no_external_installation():
    assert cryoseg.Plugin.validateInstallation() == []


def test_package_data_is_installed_with_the_package():
    folder = os.path.dirname(cryoseg.__file__)
    assert os.path.exists(os.path.join(folder, cryoseg._logo))
    assert os.path.exists(os.path.join(folder, 'protocols.conf'))


def test_references_resolve_to_bibtex_entries():
    from pyworkflow.utils import parseBibTex
    entries = parseBibTex(cryoseg.bibtex.__doc__)
    for key in cryoseg._references + ['Liu2022IsoNet', 'Reboul2018SIMPLE', 'CastanoDiez2012Dynamo',
                                      'Moebel2021DeepFinder', 'Cicek2016UNet3D']:
        assert key in entries, key
        assert entries[key].get('doi') or entries[key].get('howpublished')


def test_every_protocol_is_registered_with_a_unique_name_and_citations():
    import inspect

    from pyworkflow.protocol import Protocol
    from pyworkflow.utils import parseBibTex

    import cryoseg.protocols as module
    ours = {name: cls for name, cls in inspect.getmembers(module, inspect.isclass)
            if issubclass(cls, Protocol)}
    registered = Domain.getProtocols()
    for name, cls in ours.items():
        assert name.startswith('ProtCryoSeg'), name
        assert registered.get(name) is cls, f'{name} is not registered (name collision?)'
        assert cls._label
        citations = cls()._citations()
        assert citations and set(citations) <= set(parseBibTex(cryoseg.bibtex.__doc__)), name


def test_protocols_conf_places_every_protocol_in_the_tomography_view():
    import configparser
    import inspect
    import json

    from pyworkflow.protocol import Protocol

    import cryoseg.protocols as module
    config = configparser.ConfigParser()
    config.optionxform = str
    config.read(os.path.join(os.path.dirname(cryoseg.__file__), 'protocols.conf'))

    def listed(node):
        if node['tag'] == 'protocol':
            yield node['value']
        for child in node.get('children', []):
            yield from listed(child)

    in_tree = {name for node in json.loads(config['PROTOCOLS']['Tomography']) for name in listed(node)}
    ours = {name for name, cls in inspect.getmembers(module, inspect.isclass) if issubclass(cls, Protocol)}
    assert ours and in_tree == ours
