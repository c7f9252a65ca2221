"""Lecture mode wording (English, Spanish): labels, explanations, keys, and every error message.

The product's own explanations; the deck's figures and formulas carry over unchanged. Error messages
of :mod:`app.core.lecture` are registered as ``lec.err.<code>`` with the core's English template, so
that the API and the pages answer in the request's language.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app import i18n
from app.core.lecture import MESSAGES, LectureError

MESSAGES_ES: dict[str, str] = {
    "empty": "La matriz «{name}» está vacía: escribe al menos una fila con al menos un número.",
    "ragged": "La matriz «{name}» no es rectangular: la fila {row} tiene {got} números y la fila 1 tiene {expected}.",
    "not_finite": "La matriz «{name}» contiene un valor que no es un número finito o cuyo tamaño supera {max:g} "
                  "(fila {row}, columna {col}).",
    "too_big": "La matriz «{name}» mide {rows}×{cols}; aquí se acepta como máximo {max}×{max}.",
    "too_small": "El valor de «{name}» debe ser como mínimo {min} (se recibió {value}).",
    "too_large": "El valor de «{name}» debe ser como máximo {max} (se recibió {value}).",
    "stride": "El paso (stride) S debe ser al menos 1 (se recibió {value}).",
    "padding": "El relleno (padding) p debe ser 0 o más (se recibió {value}).",
    "kernel_too_big": "El filtro de {krows}×{kcols} no cabe en la entrada rellenada con p = {p} ({rows}×{cols}): "
                      "usa un filtro más pequeño o más relleno.",
    "channels": "La entrada tiene {expected} canales pero el filtro {filter} tiene {got}: un filtro debe tener la "
                "misma profundidad que su entrada.",
    "channel_shapes": "Todos los canales de la matriz «{name}» deben medir lo mismo: el canal {channel} mide {got} "
                      "y el canal 1 mide {expected}.",
    "filter_shapes": "Todos los filtros deben medir lo mismo: el filtro {filter} mide {got} y el filtro 1 mide "
                     "{expected}.",
    "bias_count": "Hay {filters} filtros pero {got} sesgos: da exactamente un sesgo por filtro.",
    "pixel": "El píxel de salida (fila {row}, columna {col}) está fuera de la salida de {rows}×{cols} "
             "(filas y columnas se cuentan desde 0).",
    "odd_filter": "El relleno «same» necesita un filtro de tamaño impar, pero {name} = {value} es par.",
    "pool_too_big": "La ventana de pooling de {size}×{size} no cabe en la entrada de {rows}×{cols}.",
    "upsampled_too_big": "Ampliar {rows}×{cols} por {factor} da {out_rows}×{out_cols}; aquí se produce como "
                         "máximo {max}×{max}.",
    "unknown_filter": "No existe el filtro «{value}»; los filtros son: {valid}.",
    "not_a_number": "«{value}» no es un número (en la matriz «{name}»).",
    "filter_or_kernel": "Indica el nombre de un filtro o un kernel, pero no los dos.",
}

NAMES: dict[str, tuple[str, str]] = {
    "input": ("input", "entrada"),
    "kernel": ("kernel", "kernel"),
    "filters": ("filters", "filtros"),
    "filter": ("filter", "filtro"),
    "bias": ("bias", "sesgos"),
    "input size n": ("input size n", "tamaño de entrada n"),
    "filter size f": ("filter size f", "tamaño del filtro f"),
    "padding p": ("padding p", "relleno p"),
    "stride S": ("stride S", "paso S"),
    "pooling size": ("pooling size", "tamaño del pooling"),
    "upsampling factor": ("upsampling factor", "factor de ampliación"),
    "width": ("width", "ancho"),
    "height": ("height", "alto"),
    "number of channels": ("number of channels", "número de canales"),
    "number of hidden neurons H": ("number of hidden neurons H", "número de neuronas ocultas H"),
    "number of filters K": ("number of filters K", "número de filtros K"),
    "number of neurons M": ("number of neurons M", "número de neuronas M"),
    "number of channels of the input": ("number of channels of the input", "número de canales de la entrada"),
    "number of channels of the filter": ("number of channels of the filter", "número de canales del filtro"),
    "f1": ("f1", "f1"),
    "f2": ("f2", "f2"),
}

FILTER_NAMES: dict[str, tuple[str, str]] = {
    "vertical_edges": ("Vertical edges", "Bordes verticales"),
    "horizontal_edges": ("Horizontal edges", "Bordes horizontales"),
    "edges": ("Both edges", "Ambos bordes"),
    "sobel_x": ("Sobel x", "Sobel x"),
    "sobel_y": ("Sobel y", "Sobel y"),
    "sobel": ("Sobel (strength)", "Sobel (intensidad)"),
    "blur": ("Blur", "Desenfoque"),
    "sharpen": ("Sharpen", "Enfoque"),
    "identity": ("Identity", "Identidad"),
    "custom": ("Your kernel", "Tu kernel"),
}

FILTER_HELP: dict[str, tuple[str, str]] = {
    "vertical_edges": ("Left column minus right column: bright where the picture gets darker from left to right, "
                       "dark where it gets lighter. The slides call it the “horizontal” filter.",
                       "Columna izquierda menos columna derecha: claro donde la imagen se oscurece de izquierda a "
                       "derecha, oscuro donde se aclara. Las diapositivas lo llaman filtro «horizontal»."),
    "horizontal_edges": ("Top row minus bottom row: it answers where brightness changes from top to bottom. "
                         "The slides call it the “vertical” filter.",
                         "Fila de arriba menos fila de abajo: responde donde el brillo cambia de arriba abajo. "
                         "Las diapositivas lo llaman filtro «vertical»."),
    "edges": ("Both filters combined: √(a² + b²), the strength of an edge whatever its direction.",
              "Los dos filtros combinados: √(a² + b²), la intensidad del borde sea cual sea su dirección."),
    "sobel_x": ("Like the vertical-edge filter, with more weight on the middle row: less sensitive to noise.",
                "Como el filtro de bordes verticales, con más peso en la fila central: menos sensible al ruido."),
    "sobel_y": ("Sobel's horizontal-edge filter.", "El filtro de bordes horizontales de Sobel."),
    "sobel": ("Both Sobel filters combined: √(x² + y²).", "Los dos filtros de Sobel combinados: √(x² + y²)."),
    "blur": ("A weighted average of the neighbourhood (weights add up to 1): fine detail fades.",
             "Un promedio ponderado del vecindario (los pesos suman 1): el detalle fino se pierde."),
    "sharpen": ("The centre counts 5 times, minus its four neighbours: edges stand out.",
                "El centro cuenta 5 veces, menos sus cuatro vecinos: los bordes resaltan."),
    "identity": ("Only the centre: the output equals the input.", "Solo el centro: la salida es igual a la entrada."),
    "custom": ("Your own kernel.", "Tu propio kernel."),
}

SECTION_TITLES: dict[int, tuple[str, str]] = {
    1: ("Fully connected or convolutional?", "¿Totalmente conectada o convolucional?"),
    2: ("Convolution, step by step", "La convolución, paso a paso"),
    3: ("Hand-made filters on a photo", "Filtros hechos a mano sobre una foto"),
    4: ("Convolution over volume", "Convolución sobre volumen"),
    5: ("Pooling and upsampling", "Pooling y upsampling"),
    6: ("A CNN from end to end", "Una CNN de principio a fin"),
    7: ("Counting parameters", "Contando parámetros"),
    8: ("What did the network learn?", "¿Qué aprendió la red?"),
}

PYDANTIC: dict[str, tuple[str, str]] = {
    "missing": ("this field is required", "falta este campo"),
    "int_parsing": ("this should be a whole number", "debe ser un número entero"),
    "int_type": ("this should be a whole number", "debe ser un número entero"),
    "int_from_float": ("this should be a whole number", "debe ser un número entero"),
    "float_parsing": ("this should be a number", "debe ser un número"),
    "float_type": ("this should be a number", "debe ser un número"),
    "finite_number": ("this should be a finite number", "debe ser un número finito"),
    "bool_parsing": ("this should be true or false", "debe ser verdadero o falso"),
    "bool_type": ("this should be true or false", "debe ser verdadero o falso"),
    "list_type": ("this should be a list", "debe ser una lista"),
    "too_long": ("at most {max_length} items are accepted", "se aceptan como máximo {max_length} elementos"),
    "too_short": ("at least {min_length} items are needed", "se necesitan al menos {min_length} elementos"),
    "string_type": ("this should be text", "debe ser un texto"),
    "string_too_long": ("at most {max_length} characters are accepted",
                        "se aceptan como máximo {max_length} caracteres"),
    "string_pattern_mismatch": ("this should match {pattern}", "debe cumplir el patrón {pattern}"),
    "literal_error": ("this should be {expected}", "debe ser {expected}"),
    "json_invalid": ("the body is not valid JSON", "el cuerpo no es un JSON válido"),
    "model_attributes_type": ("this should be a JSON object", "debe ser un objeto JSON"),
    "dict_type": ("this should be a JSON object", "debe ser un objeto JSON"),
    "model_type": ("this should be a JSON object", "debe ser un objeto JSON"),
    "greater_than_equal": ("this should be at least {ge}", "debe ser como mínimo {ge}"),
    "less_than_equal": ("this should be at most {le}", "debe ser como máximo {le}"),
}

i18n.register({f"lec.err.{code}": (MESSAGES[code], MESSAGES_ES[code]) for code in MESSAGES})
i18n.register({f"lec.name.{k}": v for k, v in NAMES.items()})
i18n.register({f"lec.filter.{k}": v for k, v in FILTER_NAMES.items()})
i18n.register({f"lec.filterhelp.{k}": v for k, v in FILTER_HELP.items()})
i18n.register({f"lec.s{k}.title": v for k, v in SECTION_TITLES.items()})
i18n.register({f"lec.pyd.{k}": v for k, v in PYDANTIC.items()})
i18n.register({
    "lec.err.invalid_request": ("Invalid request: {details}", "Solicitud no válida: {details}"),
    "lec.err.unknown_model": ("Unknown model '{name}'; the models are: {valid}.",
                              "No existe el modelo «{name}»; los modelos son: {valid}."),
    "lec.err.unknown_image": ("Unknown image '{id}': upload one with POST /api/images (GET /api/images lists them).",
                              "No existe la imagen «{id}»: sube una con POST /api/images (GET /api/images las "
                              "enumera)."),
    "lec.err.other": ("invalid value ({msg})", "valor no válido ({msg})"),
    # common
    "lec.mode": ("lecture", "clase"),
    "lec.apply": ("Apply", "Aplicar"),
    "lec.show": ("Show", "Mostrar"),
    "lec.input": ("Input", "Entrada"),
    "lec.output": ("Output", "Salida"),
    "lec.kernel": ("Kernel", "Kernel"),
    "lec.params": ("parameters", "parámetros"),
    "lec.params_cap": ("Parameters", "Parámetros"),
    "lec.total": ("Total", "Total"),
    "lec.cell": ("row {r}, column {c}", "fila {r}, columna {c}"),
    "lec.fill": ("Fill the matrices", "Rellenar las matrices"),
    "lec.fill.deck": ("Slides", "Diapositivas"),
    "lec.fill.deck_title": ("The example from the slides", "El ejemplo de las diapositivas"),
    "lec.fill.random": ("Random", "Al azar"),
    "lec.fill.zeros": ("Zeros", "Ceros"),
    "lec.fill.example": ("Example", "Ejemplo"),
    "lec.steps": ("Steps", "Pasos"),
    "lec.step.first": ("First step", "Primer paso"),
    "lec.step.last": ("Last step", "Último paso"),
    "lec.step.prev": ("Previous step", "Paso anterior"),
    "lec.step.next": ("Next step", "Paso siguiente"),
    "lec.step.prev_short": ("Back", "Atrás"),
    "lec.step.next_short": ("Next", "Siguiente"),
    "lec.step.play": ("Play", "Reproducir"),
    "lec.step.pause": ("Pause", "Pausa"),
    "lec.step.play_title": ("Play or pause the steps", "Reproducir o pausar los pasos"),
    "lec.step.count": ("Step {i} of {n}", "Paso {i} de {n}"),
    # navigation and keys
    "lec.nav.sections": ("Lecture sections", "Secciones de la clase"),
    "lec.nav.prev": ("Previous section", "Sección anterior"),
    "lec.nav.next": ("Next section", "Sección siguiente"),
    "lec.nav.lang": ("Switch language", "Cambiar de idioma"),
    "lec.nav.fullscreen": ("Full screen", "Pantalla completa"),
    "lec.nav.fullscreen_short": ("Full screen", "Pantalla completa"),
    "lec.keys.title": ("Keyboard", "Teclado"),
    "lec.keys.close": ("Close", "Cerrar"),
    "lec.keys.sections": ('previous / next section (also Page Up / Down)',
                          'sección anterior / siguiente (también Re Pág / Av Pág)'),
    "lec.keys.digits": ('section 1 … 8; 0: all sections',
                        'sección 1 … 8; 0: todas las secciones'),
    "lec.keys.next_step": ("next step (sections 2 to 5)", "paso siguiente (secciones 2 a 5)"),
    "lec.keys.prev_step": ("previous step", "paso anterior"),
    "lec.keys.ends": ("first / last step", "primer / último paso"),
    "lec.keys.space": ("Space", "Espacio"),
    "lec.keys.play": ('play / pause the steps',
                      'reproducir / pausar los pasos'),
    "lec.keys.fullscreen": ('full screen',
                            'pantalla completa'),
    "lec.keys.lang": ("English / Spanish", "inglés / español"),
    "lec.keys.help": ('this list / close it',
                      'esta lista / cerrarla'),
    # index
    "lec.index.title": ("Convolutional networks: the lecture", "Redes convolucionales: la clase"),
    "lec.index.lead": ('Eight steps from one filter to a trained network; the server computes every number live.',
                       'Ocho pasos desde un filtro hasta una red entrenada; el servidor calcula cada número en vivo.'),
    # 1
    "lec.s1.lead": ("A fully connected neuron has one weight per input value: on raw pixels, one per pixel and "
                    "colour channel.",
                    "Una neurona totalmente conectada tiene un peso por valor de entrada: con píxeles crudos, uno "
                    "por píxel y canal de color."),
    "lec.s1.width": ("width", "ancho"),
    "lec.s1.height": ("height", "alto"),
    "lec.s1.channels": ("channels", "canales"),
    "lec.s1.hidden": ("H: neurons in the first hidden layer", "H: neuronas de la primera capa oculta"),
    "lec.s1.presets": ("Image sizes from the slides", "Tamaños de imagen de las diapositivas"),
    "lec.s1.small": ("Small image", "Imagen pequeña"),
    "lec.s1.hd": ("720p photo", "Foto 720p"),
    "lec.s1.fc": ("Fully connected first layer", "Primera capa totalmente conectada"),
    "lec.s1.per_neuron": ("Weights of the H neurons:", "Pesos de las H neuronas:"),
    "lec.s1.with_h": ("H = {h}, plus one bias per neuron:", "H = {h}, más un sesgo por neurona:"),
    "lec.s1.conv": ("Conv layer: {k} filters {f}×{f}×{c}", "Capa convolucional: {k} filtros de {f}×{f}×{c}"),
    "lec.s1.conv_text": ("Small filters, reused at every position: the count does not depend on the image size.",
                         "Filtros pequeños, reutilizados en cada posición: la cuenta no depende del tamaño de la "
                         "imagen."),
    "lec.s1.ratio": ("The fully connected layer needs {ratio} times as many parameters.",
                     "La capa totalmente conectada necesita {ratio} veces más parámetros."),
    "lec.s1.deck_sizes": ("In the first layer alone:", "Solo en la primera capa:"),
    "lec.s1.vs_conv": ("against {n} for the conv layer", "frente a {n} de la capa convolucional"),
    # 2
    "lec.s2.n": ("n: input size (n×n)", "n: tamaño de la entrada (n×n)"),
    "lec.s2.f": ("f: filter size (f×f)", "f: tamaño del filtro (f×f)"),
    "lec.s2.p": ("p: padding, rings of zeros around the input", "p: relleno, anillos de ceros alrededor de la entrada"),
    "lec.s2.s": ("S: stride, how far the window moves each step", "S: paso (stride), cuánto avanza la ventana"),
    "lec.s2.input": ("Input {n}×{n}, p = {p}", "Entrada {n}×{n}, p = {p}"),
    "lec.s2.products": ("Window × kernel", "Ventana × kernel"),
    "lec.s2.cell": ("output[{r}][{c}]", "salida[{r}][{c}]"),
    "lec.s2.output_cell": ("output[{r}][{c}]", "salida[{r}][{c}]"),
    "lec.s2.matches": ("the output has {n} rows", "la salida tiene {n} filas"),
    "lec.s2.differs": ("but the output has {n} rows", "pero la salida tiene {n} filas"),
    # 3
    "lec.s3.filters": ("Filters", "Filtros"),
    "lec.s3.combined": ("and", "y"),
    "lec.s3.input": ("Input: the photo in grey", "Entrada: la foto en grises"),
    "lec.s3.input_alt": ("The photo in grey levels", "La foto en niveles de gris"),
    "lec.s3.output": ("Output of the filter", "Salida del filtro"),
    "lec.s3.output_alt": ("The photo filtered with: {name}", "La foto filtrada con: {name}"),
    "lec.s3.legend": ("Colour scale from {lo} to {hi}", "Escala de color de {lo} a {hi}"),
    "lec.s3.legend.signed": ("dark: negative · middle: 0 · bright: positive",
                             "oscuro: negativo · medio: 0 · claro: positivo"),
    "lec.s3.legend.magnitude": ("dark: no edge · bright: strong edge", "oscuro: sin borde · claro: borde fuerte"),
    "lec.s3.legend.grey": ("black 0 · white 1 (brightness)", "negro 0 · blanco 1 (brillo)"),
    "lec.s3.photo": ("Photo", "Foto"),
    "lec.s3.default_photo": ("astronaut (NASA, public domain)", "astronauta (NASA, dominio público)"),
    "lec.s3.upload": ("upload your own", "sube la tuya"),
    # 4
    "lec.s4.k": ("K: number of filters", "K: número de filtros"),
    "lec.s4.one_map": ("one 2D map per filter", "un mapa 2D por filtro"),
    "lec.s4.input_channel": ("Input, channel {c}", "Entrada, canal {c}"),
    "lec.s4.filter": ("Filter {k}", "Filtro {k}"),
    "lec.s4.pixel": ("Output pixel ({r}, {c}): the sum over the whole cube",
                     "Píxel de salida ({r}, {c}): la suma sobre todo el cubo"),
    "lec.s4.map": ("Map {k}", "Mapa {k}"),
    "lec.s4.count": ("Pixel {i} of {n}", "Píxel {i} de {n}"),
    # 5
    "lec.s5.mode": ("Kind of pooling", "Tipo de pooling"),
    "lec.s5.max": ('max',
                   'máx'),
    "lec.s5.avg": ('mean',
                   'media'),
    "lec.s5.fn.max": ("max", "máx"),
    "lec.s5.fn.avg": ("mean", "media"),
    "lec.s5.size": ("window", "ventana"),
    "lec.s5.up": ("upsampling factor", "factor de upsampling"),
    "lec.s5.pooled": ("Pooled ({mode})", "Tras el pooling ({mode})"),
    "lec.s5.upsampled": ('Nearest upsampling ×{f}',
                         'Upsampling (vecino más cercano) ×{f}'),
    "lec.s5.count": ("Window {i} of {n}", "Ventana {i} de {n}"),
    "lec.s5.slip": ("The slides print {printed} in this cell, but the largest of {values} is {got}: "
                    "a slip on the slide, which the computation catches.",
                    "Las diapositivas muestran {printed} en esta celda, pero el mayor de {values} es {got}: "
                    "un desliz de la diapositiva que el cálculo detecta."),
    "lec.s5.slip_short": ("The slides show [[8, 6], [7, 7]]; the top-right maximum is really 7 (see window 2).",
                          "Las diapositivas muestran [[8, 6], [7, 7]]; el máximo de arriba a la derecha es en "
                          "realidad 7 (mira la ventana 2)."),
    "lec.s5.no_params": ("Pooling has no parameters: it learns nothing. Upsampling copies each value into a block "
                         "(encoder–decoder networks).",
                         "El pooling no tiene parámetros: no aprende nada. El upsampling copia cada valor en un bloque "
                         "(redes codificador–decodificador)."),
    # 6
    "lec.s6.f1": ("f1: conv1 filter size (odd)", "f1: tamaño de filtro de conv1 (impar)"),
    "lec.s6.f2": ("f2: conv2 filter size (odd)", "f2: tamaño de filtro de conv2 (impar)"),
    "lec.s6.m": ("M: neurons in fc1", "M: neuronas de fc1"),
    "lec.s6.input": ("grey image", "imagen en grises"),
    "lec.s6.conv": ("{k} filters {f}×{f}, p = {p}", "{k} filtros {f}×{f}, p = {p}"),
    "lec.s6.pool": ("max 2×2, stride 2", "máx 2×2, paso 2"),
    "lec.s6.flatten": ("flattened into a vector", "aplanado en un vector"),
    "lec.s6.fc": ("fully connected, {m} neurons", "totalmente conectada, {m} neuronas"),
    "lec.s6.out": ("10 classes, softmax", "10 clases, softmax"),
    "lec.s6.no_params": ("no parameters", "sin parámetros"),
    "lec.s6.same_note": ("“Same” padding p = (f − 1)/2 keeps n×n through each conv.",
                         "El relleno «same» p = (f − 1)/2 mantiene n×n en cada convolución."),
    # 7
    "lec.s7.caption": ("The lecture network (32×32×3 input, 10 classes)",
                       "La red de la clase (entrada 32×32×3, 10 clases)"),
    "lec.s7.layer": ("Layer", "Capa"),
    "lec.s7.what": ("What", "Qué hace"),
    "lec.s7.type": ("Type", "Tipo"),
    "lec.s7.output": ("Output", "Salida"),
    "lec.s7.formula": ("Formula", "Fórmula"),
    "lec.s7.conv": ("{k} filters {f} + bias, stride {s}", "{k} filtros {f} + sesgo, paso {s}"),
    "lec.s7.pool": ("max {f}×{f}, stride {s}", "máx {f}×{f}, paso {s}"),
    "lec.s7.bn": ("batch normalisation: scale γ and shift β per channel",
                  "normalización por lotes: escala γ y desplazamiento β por canal"),
    "lec.s7.checked": ("(= Σ p.numel() of the PyTorch module)", "(= Σ p.numel() del módulo de PyTorch)"),
    "lec.s7.full_table": ("the whole table", "la tabla completa"),
    "lec.s7.zoo": ("The same count for a served model:", "La misma cuenta para un modelo disponible:"),
    # 8
    "lec.s8.lead": ('Four ways to look inside a trained network, simplest first.',
                    'Cuatro maneras de mirar dentro de una red entrenada, de la más simple a la más compleja.'),
    "lec.s8.filters": ("1. The filters of the first layer", "1. Los filtros de la primera capa"),
    "lec.s8.filters_text": ("They act on pixels directly, so they can be drawn as small pictures: oriented edges and "
                            "colour blobs.",
                            "Actúan directamente sobre los píxeles, así que se dibujan como imágenes pequeñas: bordes y"
                            " manchas de color orientados."),
    "lec.s8.activations": ("2. Activations of every layer", "2. Activaciones de cada capa"),
    "lec.s8.activations_text": ("Run one photo through the network and look at each map: early layers keep the "
                                "picture, later ones become abstract.",
                                "Pasa una foto por la red y mira cada mapa: las primeras capas conservan la imagen, "
                                "las siguientes se vuelven abstractas."),
    "lec.s8.upload": ("Upload a photo", "Sube una foto"),
    "lec.s8.examples": ('3. The 9 images that excite a neuron most',
                        '3. Las 9 imágenes que más activan una neurona'),
    "lec.s8.examples_text": ("The examples of a data set with the highest activation: in the first layer, particular "
                             "orientations and colours.",
                             "Los ejemplos de un conjunto de datos con mayor activación: en la primera capa, "
                             "orientaciones y colores concretos."),
    "lec.s8.featvis": ("4. Feature visualization", "4. Visualización de características"),
    "lec.s8.featvis_text": ("Start from noise and climb the gradient to the input that maximises a neuron, a channel or"
                            " a layer (Olah et al., Distill 2017).",
                            "Desde ruido, subir por el gradiente hasta la entrada que maximiza una neurona, un canal o "
                            "una capa (Olah et al., Distill 2017)."),
    "lec.s8.refs": ("Reading: CS231n lecture 7 (2016); Chollet, Deep Learning with Python (2017); Ng, Convolutional "
                    "Neural Networks (2017).",
                    "Lecturas: CS231n, clase 7 (2016); Chollet, Deep Learning with Python (2017); Ng, Convolutional "
                    "Neural Networks (2017)."),
})


def error_text(e: LectureError, lang: str) -> str:
    """A core error in the given language (parameter names translated too)."""
    _ = i18n.translator(lang)
    params: dict[str, Any] = dict(e.params)
    name = params.get("name")
    if isinstance(name, str) and name in NAMES:
        params["name"] = _(f"lec.name.{name}")
    return _(f"lec.err.{e.code}", **params)


def _clean_loc(loc: Sequence[Any]) -> list[Any]:
    """Drop the request part (body/query) and pydantic's union-member labels (int, float…)."""
    out = [p for p in loc[1:] if not (isinstance(p, str) and (p in ("int", "float", "str", "bool", "list")
                                                             or "[" in p))]
    return out or list(loc[:1])


def validation_text(errors: Sequence[Any], lang: str) -> tuple[str, list[dict[str, Any]]]:
    """A translated one-line message for request-validation errors, and the errors (deduplicated)."""
    _ = i18n.translator(lang)
    catalog = i18n.catalog()
    seen: dict[str, dict[str, Any]] = {}
    for err in errors:
        loc = _clean_loc(err.get("loc", ()))
        where = ".".join(str(p) for p in loc)
        typ = err.get("type", "")
        ctx = {k: v for k, v in (err.get("ctx") or {}).items()}
        key = f"lec.pyd.{typ}"
        if key in catalog:
            try:
                msg = _(key, **ctx)
            except (KeyError, IndexError):
                msg = _(key) if not ctx else _("lec.err.other", msg=err.get("msg", ""))
        else:
            msg = _("lec.err.other", msg=err.get("msg", ""))
        seen[where] = {"loc": loc, "msg": msg, "type": typ}
    details = "; ".join(f"{w}: {e['msg']}" if w else e["msg"] for w, e in seen.items())
    return _("lec.err.invalid_request", details=details), list(seen.values())
