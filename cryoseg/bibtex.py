# -*- coding: utf-8 -*-
"""
@article{delaRosaTrevin2016,
  title = {Scipion: A software framework toward integration, reproducibility and validation in 3D electron microscopy},
  author = {de la Rosa-Trevín, J. M. and Quintana, A. and del Cano, L. and Zaldívar, A. and Foche, I. and Gutiérrez, J. and Gómez-Blanco, J. and Burguet-Castell, J. and Cuenca-Alba, J. and Abrishami, V. and Vargas, J. and Otón, J. and Sharov, G. and Vilas, J. L. and Navas, J. and Conesa, P. and Kazemi, M. and Marabini, R. and Sorzano, C. O. S. and Carazo, J. M.},
  journal = {Journal of Structural Biology},
  volume = {195},
  number = {1},
  pages = {93--99},
  year = {2016},
  doi = {http://dx.doi.org/10.1016/j.jsb.2016.04.010}
}

@article{JimenezDeLaMorena2022,
  title = {ScipionTomo: Towards cryo-electron tomography software integration, reproducibility, and validation},
  author = {Jiménez de la Morena, J. and Conesa, P. and Fonseca, Y. C. and de Isidro-Gómez, F. P. and Herreros, D. and Fernández-Giménez, E. and Strelak, D. and Moebel, E. and Buchholz, T. O. and Jug, F. and Martinez-Sanchez, A. and Harastani, M. and Jonic, S. and Conesa, J. J. and Cuervo, A. and Losana, P. and Sánchez, I. and Iceta, M. and del Cano, L. and Gragera, M. and Melero, R. and Sharov, G. and Castaño-Díez, D. and Koster, A. and Piccirillo, J. G. and Vilas, J. L. and Otón, J. and Marabini, R. and Sorzano, C. O. S. and Carazo, J. M.},
  journal = {Journal of Structural Biology},
  volume = {214},
  number = {3},
  pages = {107872},
  year = {2022},
  doi = {http://dx.doi.org/10.1016/j.jsb.2022.107872}
}

@article{Liu2022IsoNet,
  title = {Isotropic reconstruction for electron tomography with deep learning},
  author = {Liu, Y.-T. and Zhang, H. and Wang, H. and Tao, C.-L. and Bi, G.-Q. and Zhou, Z. H.},
  journal = {Nature Communications},
  volume = {13},
  pages = {6482},
  year = {2022},
  doi = {http://dx.doi.org/10.1038/s41467-022-33957-8}
}

@article{Reboul2018SIMPLE,
  title = {Single-particle cryo-EM -- Improved ab initio 3D reconstruction with SIMPLE/PRIME},
  author = {Reboul, C. F. and Eager, M. and Elmlund, D. and Elmlund, H.},
  journal = {Protein Science},
  volume = {27},
  number = {1},
  pages = {51--61},
  year = {2018},
  doi = {http://dx.doi.org/10.1002/pro.3266}
}

@article{CastanoDiez2012Dynamo,
  title = {Dynamo: a flexible, user-friendly development tool for subtomogram averaging of cryo-EM data in high-performance computing environments},
  author = {Castaño-Díez, D. and Kudryashev, M. and Arheit, M. and Stahlberg, H.},
  journal = {Journal of Structural Biology},
  volume = {178},
  number = {2},
  pages = {139--151},
  year = {2012},
  doi = {http://dx.doi.org/10.1016/j.jsb.2011.12.017}
}

@article{CastanoDiez2017Catalogue,
  title = {Dynamo Catalogue: Geometrical tools and data management for particle picking in subtomogram averaging of cryo-electron tomograms},
  author = {Castaño-Díez, D. and Kudryashev, M. and Stahlberg, H.},
  journal = {Journal of Structural Biology},
  volume = {197},
  number = {2},
  pages = {135--144},
  year = {2017},
  doi = {http://dx.doi.org/10.1016/j.jsb.2016.06.005}
}

@article{Moebel2021DeepFinder,
  title = {Deep learning improves macromolecule identification in 3D cellular cryo-electron tomograms},
  author = {Moebel, E. and Martinez-Sanchez, A. and Lamm, L. and Righetto, R. D. and Wietrzynski, W. and Albert, S. and Larivière, D. and Fourmentin, E. and Pfeffer, S. and Ortiz, J. and Baumeister, W. and Peng, T. and Engel, B. D. and Kervrann, C.},
  journal = {Nature Methods},
  volume = {18},
  pages = {1386--1394},
  year = {2021},
  doi = {http://dx.doi.org/10.1038/s41592-021-01275-4}
}

@misc{HelmholtzParticleDetection,
  title = {Particle detection in 3D cellular cryo-electron tomograms (MaskNet and CenterNet)},
  author = {{Helmholtz AI Consultants Munich}},
  howpublished = {\\url{https://github.com/HelmholtzAI-Consultants-Munich/Particle-detection-in-3D-cellular-cryo-electron-tomograms}},
  year = {2021}
}

@inproceedings{Cicek2016UNet3D,
  title = {3D U-Net: Learning Dense Volumetric Segmentation from Sparse Annotation},
  author = {Çiçek, Ö. and Abdulkadir, A. and Lienkamp, S. S. and Brox, T. and Ronneberger, O.},
  booktitle = {Medical Image Computing and Computer-Assisted Intervention -- MICCAI 2016},
  series = {Lecture Notes in Computer Science},
  volume = {9901},
  pages = {424--432},
  year = {2016},
  doi = {http://dx.doi.org/10.1007/978-3-319-46723-8_49}
}

@article{Xu2011TemplateFree,
  title = {Template-free detection of macromolecular complexes in cryo electron tomograms},
  author = {Xu, M. and Beck, M. and Alber, F.},
  journal = {Bioinformatics},
  volume = {27},
  number = {13},
  pages = {i69--i76},
  year = {2011},
  doi = {http://dx.doi.org/10.1093/bioinformatics/btr207}
}

@inproceedings{Lee2013PseudoLabel,
  title = {Pseudo-Label: The Simple and Efficient Semi-Supervised Learning Method for Deep Neural Networks},
  author = {Lee, D.-H.},
  booktitle = {ICML 2013 Workshop on Challenges in Representation Learning},
  year = {2013}
}

@inproceedings{Elkan2008PositiveUnlabeled,
  title = {Learning classifiers from only positive and unlabeled data},
  author = {Elkan, C. and Noto, K.},
  booktitle = {Proceedings of the 14th ACM SIGKDD International Conference on Knowledge Discovery and Data Mining},
  pages = {213--220},
  year = {2008},
  doi = {http://dx.doi.org/10.1145/1401890.1401920}
}
"""
