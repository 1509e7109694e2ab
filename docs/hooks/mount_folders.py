"""MkDocs hook: repository folders outside docs/ that the site shows at the same path.

The notebooks stay where they are run and tested (examples/, beside their README), so
they are not inside docs_dir. `on_files` adds examples/README.md and every notebook as
files of the site at the same path (examples/quickstart.ipynb is the page
examples/quickstart/), before mkdocs-jupyter turns the notebooks into pages. The
experiment recipes (recipes/*.toml) are copied as they are, so a page can link to them.

A docs page links to these files as the repository lays them out,
`../examples/quickstart.ipynb` (a link that works in the repository browser too);
`on_page_markdown` rewrites such a link to the file of the site, relative to the linking
page. Every other link is left to MkDocs' own check, which fails a strict build on any
link that leaves the site.
"""

import pathlib
import posixpath
import re

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

# folder -> the file patterns of it that the site shows (a missing folder adds nothing)
MOUNTS = {"examples": ("README.md", "*.ipynb"), "recipes": ("*.toml",)}
LINK = re.compile(r"(\]\()([^)\s]+)(\))")


def mounted_files(repository: pathlib.Path) -> list[str]:
    """The repository paths of the files that the mounted folders add to the site, sorted."""
    return sorted(f"{folder}/{path.name}" for folder, patterns in MOUNTS.items()
                  for pattern in patterns for path in (repository / folder).glob(pattern))


def is_mounted(path: str) -> bool:
    return path.split("/")[0] in MOUNTS


def repository_of(config) -> pathlib.Path:
    return pathlib.Path(config.config_file_path).resolve().parent


@event_priority(100)  # before mkdocs-jupyter's on_files, which converts the notebooks
def on_files(files, config):
    repository = repository_of(config)
    for path in mounted_files(repository):
        files.append(File(path, src_dir=str(repository), dest_dir=config.site_dir,
                          use_directory_urls=config.use_directory_urls))
    return files


def site_link(target: str, page_uri: str, docs_folder: str) -> str:
    """`target` as the page at `page_uri` (in docs_dir) must write it on the site.

    A relative link that resolves into a mounted folder (examples/, recipes/) points at
    the mounted copy; any other link is returned unchanged.
    """
    if "://" in target or target.startswith(("#", "/", "mailto:")):
        return target
    path, hash_mark, anchor = target.partition("#")
    page_folder = posixpath.dirname(page_uri)
    in_repository = posixpath.normpath(posixpath.join(docs_folder, page_folder, path))
    if not is_mounted(in_repository):
        return target
    return posixpath.relpath(in_repository, page_folder or ".") + hash_mark + anchor


def on_page_markdown(markdown, page, config, files):
    if is_mounted(page.file.src_uri):
        return markdown  # a mounted page already links as the site lays it out
    docs_folder = posixpath.relpath(pathlib.Path(config.docs_dir).resolve().as_posix(),
                                    repository_of(config).as_posix())
    return LINK.sub(lambda m: m.group(1) + site_link(m.group(2), page.file.src_uri,
                                                     docs_folder) + m.group(3), markdown)
