"""Short descriptions of the classes of the data sets the package loads.

Each class of Trento, MUUFL Gulfport, Houston 2013, Jasper Ridge and the IDTReeS
2020 taxa has two to four sentences, written from public botanical and land-cover
facts: what sets the class apart in its spectrum (chlorophyll absorption, red edge,
near-infrared plateau, water absorption, shadow), in height (the LiDAR canopy or
ground) and in texture. They join the class-name prompts of
:class:`~sklearn_mmlgnet.MMLGNetClassifier` through its ``class_descriptions``
parameter (a prompt ensemble), or describe candidate classes for
:meth:`~sklearn_mmlgnet.MMLGNetClassifier.text_scores`.

They are general knowledge, not measurements of these scenes: heights are typical
ranges of the species or objects, and whether a sentence helps a given text
encoder is for the benchmark to say.

Examples
--------
>>> from sklearn_mmlgnet.descriptions import class_descriptions
>>> class_descriptions("trento")["Roads"][0]
'Asphalt roads at ground level, long and narrow.'
>>> sorted(class_descriptions("jasper_ridge"))
['Dirt', 'Road', 'Tree', 'Water']
"""

from __future__ import annotations

from .datasets import (HOUSTON2013_CLASSES, JASPER_RIDGE_CLASSES, MUUFL_CLASSES,
                       SYNTHETIC_CLASSES, TRENTO_CLASSES)

__all__ = ["CLASS_DESCRIPTIONS", "DATASETS", "class_descriptions"]

_BROADLEAF = "Broadleaf spectrum: a steep red edge and a bright near-infrared plateau."
_CONIFER = ("Conifer spectrum: darker in the visible and lower on the near-infrared plateau "
            "than broadleaf crowns.")

CLASS_DESCRIPTIONS = {
    "trento": {
        "Apple trees": (
            "Apple orchards in regular rows of small trees 3 to 5 m tall, with grass between.",
            "Green leaves absorb red light; a steep red edge and a bright near-infrared plateau.",
            "A low, evenly spaced canopy in LiDAR, with a regular pattern of rows."),
        "Buildings": (
            "Houses and industrial buildings with roofs of tile, metal or concrete.",
            "Roof spectra are flat or rise slowly, with no red edge.",
            "Raised several metres above the ground in LiDAR, with sharp edges and shadows "
            "beside them."),
        "Ground": (
            "Bare soil and uncultivated ground.",
            "Reflectance rises smoothly from the visible to the near infrared, with no red edge.",
            "Flat at terrain level in LiDAR, as low as the roads."),
        "Woods": (
            "Dense forest on the hillsides, with tall broadleaf and conifer crowns.",
            "A strong red edge and high near-infrared reflectance, dark in the visible, with "
            "shadowed gaps between crowns.",
            "The tallest canopy of the scene in LiDAR, often over 15 m, with a rough, irregular "
            "surface."),
        "Vineyard": (
            "Rows of vines 1.5 to 2 m high on trellises, with strips of grass or soil between.",
            "A mix of green leaves and soil: a weaker red edge than a closed canopy.",
            "Low, finely striped height pattern in LiDAR that follows the rows."),
        "Roads": (
            "Asphalt roads at ground level, long and narrow.",
            "Dark and spectrally flat, with no red edge.",
            "Flat in LiDAR, at terrain level."),
    },
    "muufl": {
        "Trees": (
            "Oaks, pines and other trees of a university campus, often overhanging roads and "
            "roofs.",
            "Green crowns with a steep red edge and a bright near-infrared plateau.",
            "Several metres to over 15 m tall in LiDAR, with irregular crowns."),
        "Mostly grass": (
            "Mowed lawns and grassy fields.",
            "Red absorption, a red edge and bright near infrared, brighter in the visible than "
            "tree crowns.",
            "Flat at ground level in LiDAR, with a smooth texture."),
        "Mixed ground surface": (
            "Ground mixing sparse grass, soil and gravel.",
            "A spectrum between soil and vegetation, with a weak red edge.",
            "Flat at ground level in LiDAR."),
        "Dirt and sand": (
            "Bare dirt and sand.",
            "Bright in the visible, rising smoothly toward the near infrared, with no red edge.",
            "Flat at ground level in LiDAR."),
        "Road": (
            "Asphalt roads and parking lanes.",
            "Dark and spectrally flat across the visible and near infrared.",
            "Flat at ground level in LiDAR, in long, narrow strips."),
        "Water": (
            "A small pond.",
            "Dark in the visible and darker still in the near infrared, where water absorbs.",
            "Flat and smooth, at the lowest level of the scene."),
        "Building shadow": (
            "Ground and low surfaces in the shadow cast by buildings.",
            "Low reflectance in every band, dark in the visible and in the near infrared.",
            "At ground level in LiDAR, next to tall buildings."),
        "Building": (
            "Campus buildings with flat or pitched roofs of several materials.",
            "Roof spectra with no red edge, bright or dark by material.",
            "Raised several metres above the ground in LiDAR, with sharp edges."),
        "Sidewalk": (
            "Concrete sidewalks and paths a metre or two wide.",
            "Bright, spectrally flat concrete, brighter than asphalt.",
            "Flat at ground level in LiDAR, in thin strips."),
        "Yellow curb": (
            "Yellow-painted curbs along the roads, a few pixels wide.",
            "Yellow paint reflects green and red light and absorbs blue.",
            "A thin line at ground level between road and grass."),
        "Cloth panels": (
            "Square cloth targets laid on the grass, in several colours.",
            "Dyed fabric spectra, unlike living vegetation even where they look green.",
            "Flat on the ground in LiDAR, small and square."),
    },
    "houston2013": {
        "Healthy grass": (
            "Green, well-watered lawns.",
            "Deep red absorption, a steep red edge and a bright near-infrared plateau.",
            "Flat at ground level in LiDAR, smooth."),
        "Stressed grass": (
            "Dry, yellowing lawns.",
            "Weaker red absorption, a red edge shifted to shorter wavelengths and a lower "
            "near-infrared plateau than healthy grass.",
            "Flat at ground level in LiDAR."),
        "Synthetic grass": (
            "Artificial turf of sports fields.",
            "Green plastic: green in the visible but without the red edge and near-infrared "
            "plateau of living leaves.",
            "Flat and smooth, in rectangular fields."),
        "Trees": (
            "Street and park trees of the city.",
            "A strong red edge and bright near infrared, darker in the visible than grass.",
            "Rise several metres above the ground in LiDAR, with rough, rounded crowns."),
        "Soil": (
            "Bare soil of construction sites and unpaved lots.",
            "Reflectance rises steadily from the visible to the near infrared, with no red edge.",
            "Flat at ground level in LiDAR."),
        "Water": (
            "Ponds, pools and streams.",
            "Dark in the visible and nearly black in the near infrared, where water absorbs.",
            "Flat and smooth, at the lowest level."),
        "Residential": (
            "Houses with pitched roofs among yards and trees.",
            "Mixed spectra of shingle roofs, lawns and crowns.",
            "Small buildings a few metres tall in LiDAR, in a regular pattern."),
        "Commercial": (
            "Large commercial and office buildings with flat roofs.",
            "Concrete, gravel and metal roofs: spectrally flat and often bright.",
            "Tall, with large footprints and sharp edges in LiDAR."),
        "Road": (
            "City streets of asphalt or concrete.",
            "Grey and spectrally flat, with no red edge.",
            "Flat at ground level in LiDAR, narrow and linear."),
        "Highway": (
            "Wide, multi-lane highways and their ramps.",
            "Asphalt and concrete pavement, spectrally flat.",
            "Wide linear bands in LiDAR, raised above the ground on overpasses."),
        "Railway": (
            "Railway tracks: steel rails on sleepers and gravel ballast.",
            "Dark, spectrally flat gravel and steel.",
            "Flat, narrow and linear in LiDAR."),
        "Parking lot 1": (
            "Parking garages, at ground level and on raised decks.",
            "Concrete and asphalt, spectrally flat.",
            "Wide, open areas, flat or raised as a deck in LiDAR."),
        "Parking lot 2": (
            "Parked vehicles in rows.",
            "Mixed spectra of car paint, glass and pavement, in a speckled texture.",
            "Small bumps about 1.5 m above the ground in LiDAR."),
        "Tennis court": (
            "Outdoor hard tennis courts.",
            "Painted acrylic surfaces, often green or blue, with white lines and no red edge.",
            "Flat rectangles at ground level in LiDAR."),
        "Running track": (
            "An athletic running track around a sports field.",
            "Red-brown rubber surface whose reflectance rises in the red.",
            "A flat oval ring at ground level around a grass field."),
    },
    # HSI only: no LiDAR raster, so no heights.
    "jasper_ridge": {
        "Tree": (
            "Oak woodland and shrubs of a nature reserve.",
            "Leaves: red absorption, a red edge and a bright near-infrared plateau, with water "
            "absorption dips near 1450 and 1940 nm.",
            "Rough, clumped crowns."),
        "Water": (
            "Open water of a lake.",
            "Dark in every band and nearly black in the near and shortwave infrared.",
            "A smooth, uniform surface."),
        "Dirt": (
            "Bare soil and dry ground.",
            "Reflectance rises from the visible to the shortwave infrared, with clay absorption "
            "near 2200 nm and no red edge.",
            "Bright, with a rough texture."),
        "Road": (
            "A narrow road across the scene.",
            "Pavement and gravel: spectrally flat, with no red edge.",
            "A thin, linear feature."),
    },
    # Keyed by NEON taxonID, as IDTREES_COMMON_NAMES: the loader's names come from the
    # competition's taxon table.
    "idtrees": {
        "ACPE": ("Striped maple, a small understory maple under 10 m with large three-lobed "
                 "leaves.", "Shaded beneath the hardwood canopy, low in LiDAR.", _BROADLEAF),
        "ACRU": ("Red maple, a deciduous tree 15 to 25 m with lobed leaves and a rounded crown.",
                 "Grows from upland forest to wet flatwoods.", _BROADLEAF),
        "ACSA3": ("Sugar maple, a deciduous hardwood 20 to 35 m with five-lobed leaves.",
                  "A dense, rounded crown in the mountain forests.", _BROADLEAF),
        "AMLA": ("Allegheny serviceberry, a small deciduous tree 5 to 12 m with finely toothed "
                 "oval leaves.", "A narrow crown in the understory or at forest edges.",
                 _BROADLEAF),
        "BETUL": ("Birch, deciduous trees 15 to 25 m with small toothed leaves.",
                  "Light, open and finely textured crowns.", _BROADLEAF),
        "CAGL8": ("Pignut hickory, a deciduous hardwood 20 to 30 m with compound leaves.",
                  "An oval crown in dry upland oak-hickory forest.", _BROADLEAF),
        "CATO6": ("Mockernut hickory, a deciduous hickory 20 to 30 m with large compound "
                  "leaves.", "Dry uplands; a rounded crown.", _BROADLEAF),
        "FAGR": ("American beech, a deciduous hardwood 20 to 35 m with glossy toothed leaves.",
                 "A dense, wide, deep crown; very shade tolerant.", _BROADLEAF),
        "GOLA": ("Loblolly bay, an evergreen broadleaf tree 10 to 20 m of wet bay swamps.",
                 "A narrow crown of dark, leathery, glossy leaves.", _BROADLEAF),
        "LITU": ("Tuliptree, a tall deciduous hardwood 25 to 45 m with four-lobed leaves.",
                 "Often the tallest broadleaf crown of the forest in LiDAR.", _BROADLEAF),
        "LYLU3": ("Fetterbush, an evergreen shrub 1 to 3 m of wet pine flatwoods.",
                  "Glossy, leathery leaves close to the ground, very low in LiDAR.",
                  _BROADLEAF),
        "MAGNO": ("Magnolia, trees 10 to 25 m with large simple leaves.",
                  "Evergreen and glossy in the south, deciduous in the mountains.", _BROADLEAF),
        "NYBI": ("Swamp tupelo, a deciduous tree 15 to 30 m of swamps and wet flatwoods.",
                 "Glossy oval leaves; grows in standing water or saturated soil.", _BROADLEAF),
        "NYSY": ("Blackgum, a deciduous tree 15 to 25 m with glossy oval leaves.",
                 "A dense, often flat-topped crown; the leaves turn red early in autumn.",
                 _BROADLEAF),
        "OXYDE": ("Sourwood, a small deciduous tree 8 to 15 m with long, narrow leaves.",
                  "Mid-canopy or understory, low to medium in LiDAR.", _BROADLEAF),
        "PEPA37": ("Swamp bay, an evergreen broadleaf tree 5 to 15 m of swamps and bay heads.",
                   "Aromatic, leathery leaves in a low to medium canopy.", _BROADLEAF),
        "PIEL": ("Slash pine, an evergreen conifer 20 to 30 m with long needles in bundles of "
                 "two or three.", "An open, rounded crown over tall trunks; LiDAR reaches the "
                 "ground between crowns.", _CONIFER),
        "PIPA2": ("Longleaf pine, an evergreen pine 20 to 35 m with very long needles in "
                  "bundles of three.", "Open, clumped crowns in fire-maintained sandhills, with "
                  "bright ground between them.", _CONIFER),
        "PINUS": ("Pine, evergreen conifers with needles in bundles, named to genus only.",
                  "Open crowns that LiDAR partly passes through.", _CONIFER),
        "PITA": ("Loblolly pine, an evergreen pine 25 to 35 m with needles in bundles of three.",
                 "A dense, oval crown over a tall trunk.", _CONIFER),
        "PRSE2": ("Black cherry, a deciduous tree 15 to 25 m with narrow, glossy, finely "
                  "toothed leaves.", "Upland forest and forest edges.", _BROADLEAF),
        "QUAL": ("White oak, a deciduous oak 20 to 30 m with round-lobed leaves.",
                 "A broad, spreading crown, tall in LiDAR.", _BROADLEAF),
        "QUCO2": ("Scarlet oak, a deciduous oak 20 to 30 m with deeply cut, bristle-tipped "
                  "lobes.", "Dry upland ridges; an open crown.", _BROADLEAF),
        "QUGE2": ("Sand live oak, an evergreen oak of sandhills and scrub, often a shrub or small "
                  "tree under 10 m.", "Thick, leathery leaves in low, dense crowns.",
                  _BROADLEAF),
        "QUHE2": ("Darlington oak, a nearly evergreen oak 15 to 25 m with narrow, shiny leaves.",
                  "A dense, rounded crown.", _BROADLEAF),
        "QULA2": ("Turkey oak, a small deciduous oak 6 to 15 m with three-lobed leaves held on "
                  "edge.", "Grows under longleaf pine on dry sand; low in LiDAR.", _BROADLEAF),
        "QULA3": ("Laurel oak, a nearly evergreen oak 15 to 25 m with narrow, unlobed leaves.",
                  "Moist soils; a dense, rounded crown.", _BROADLEAF),
        "QUMO4": ("Chestnut oak, a deciduous oak 20 to 30 m with wavy-toothed leaves.",
                  "Dry, rocky ridges of the mountains.", _BROADLEAF),
        "QUNI": ("Water oak, a deciduous to nearly evergreen oak 15 to 25 m with leaves broad at "
                 "the tip.", "Moist lowlands; a rounded crown.", _BROADLEAF),
        "QURU": ("Northern red oak, a deciduous oak 20 to 30 m with bristle-tipped lobed leaves.",
                 "A large, rounded crown, tall in LiDAR.", _BROADLEAF),
        "QUERC": ("Oak, broadleaf trees mostly 15 to 30 m, named to genus only.",
                  "Rounded, spreading crowns.", _BROADLEAF),
        "ROPS": ("Black locust, a deciduous tree 12 to 25 m with compound leaves of small oval "
                 "leaflets.", "An open, finely textured crown on disturbed ground and forest "
                 "edges.", _BROADLEAF),
        "TSCA": ("Eastern hemlock, an evergreen conifer 20 to 30 m with short, flat needles.",
                 "A dense, conical crown that deeply shades the ground, in ravines and along "
                 "streams.", _CONIFER),
    },
}
"""``{dataset: {class: (sentence, ...)}}``; IDTReeS classes are keyed by NEON taxonID."""

#: The data sets with shipped descriptions (and ``"synthetic"``, which has Trento's classes).
DATASETS = (*CLASS_DESCRIPTIONS, "synthetic")

#: The loaders' ``{label: class name}`` tables, which the Bunch labels follow.
_LABELS = {"trento": TRENTO_CLASSES, "muufl": MUUFL_CLASSES,
           "houston2013": HOUSTON2013_CLASSES, "jasper_ridge": JASPER_RIDGE_CLASSES,
           "synthetic": SYNTHETIC_CLASSES}


def class_descriptions(dataset):
    """The shipped descriptions of a data set's classes.

    Parameters
    ----------
    dataset : str or Bunch
        A name of :data:`DATASETS` (``"trento"``, ``"muufl"``, ``"houston2013"``,
        ``"jasper_ridge"``, ``"idtrees"``, or ``"synthetic"``, whose classes are
        Trento's), or the Bunch a loader returned
        (:func:`~sklearn_mmlgnet.datasets.load_trento`, ...,
        :func:`~sklearn_mmlgnet.datasets.load_idtrees`,
        :func:`~sklearn_mmlgnet.datasets.make_hsi_lidar_scene`).

    Returns
    -------
    descriptions : dict
        For a name: ``{class name: [sentence, ...]}`` (IDTReeS: ``{taxonID: [...]}``).
        For a Bunch: ``{label: [sentence, ...]}`` for its labels (the keys of its
        ``class_names``), ready for ``MMLGNetClassifier(class_descriptions=...)``
        when ``y`` holds the Bunch's labels. Fresh lists: edit them freely.

    Examples
    --------
    >>> from sklearn_mmlgnet.datasets import make_hsi_lidar_scene
    >>> scene = make_hsi_lidar_scene(n_bands=8, random_state=0)
    >>> descr = class_descriptions(scene)
    >>> sorted(descr) == sorted(scene.class_names)
    True
    >>> descr[4][0]  # label 4 is "Woods"
    'Dense forest on the hillsides, with tall broadleaf and conifer crowns.'
    """
    if isinstance(dataset, str):
        key = dataset.lower()
        if key not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS} or a loader's Bunch; "
                             f"got {dataset!r}.")
        table = CLASS_DESCRIPTIONS["trento" if key == "synthetic" else key]
        return {name: list(sentences) for name, sentences in table.items()}
    taxa = getattr(dataset, "taxon_ids", None)
    if taxa is not None:  # IDTReeS: the labels' taxa
        table = CLASS_DESCRIPTIONS["idtrees"]
        return {label: list(table[t]) for label, t in taxa.items() if t in table}
    name = getattr(dataset, "name", None)
    if name not in _LABELS or not hasattr(dataset, "class_names"):
        raise ValueError(
            f"dataset must be one of the names {DATASETS} or the Bunch of a loader (with "
            f"class_names and a name among {tuple(_LABELS)}, or taxon_ids); got a "
            f"{type(dataset).__name__} named {name!r}.")
    table = class_descriptions(name)
    # By label, through the loader's table: MUUFL files may spell their class names otherwise.
    return {label: table[_LABELS[name][label]] for label in dataset.class_names
            if label in _LABELS[name]}
